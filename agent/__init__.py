"""The application: config, CLI, jobs, watcher, daemon, service glue."""

__version__ = "0.1.0"
