"""`hubsync daemon`: watch every [[watch]] job and keep its remote in step, until SIGTERM.

The flow: watcher (OS events) -> aggregator (settle, collapse, rescan) -> scheduler (one queue,
global limits, retries) -> the engine (journal, destinations). `runner` composes it; `status`
is what `hubsync status` reads, and imports nothing heavy.
"""
