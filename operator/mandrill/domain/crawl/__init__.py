"""The crawl engine: which URLs to fetch, in what order and how fast, and what a page links to.

Pure: stdlib, attrs, selectolax (HTML) and Protego (robots.txt). Fetching is
a port (`ports.Fetcher`), results go to a port (`ports.ResultSink`), so the
same engine serves the `mandrill crawl` CLI and the CrawlJob handler.
"""
