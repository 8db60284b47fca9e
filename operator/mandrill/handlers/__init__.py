"""kopf handlers: the only place with @kopf decorators. Thin: parse, call domain, report."""
