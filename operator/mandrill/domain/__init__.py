"""Domain logic: plain async Python over attrs models.

Nothing here imports kopf, kubernetes_asyncio or aiohttp; the world is reached
through Protocol ports that adapters implement, so every rule can be tested
with small fakes or a real local server.
"""
