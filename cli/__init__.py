"""The `dgm` command line: `main.py` (parser and entry point), `server.py` (commands that run
in-process), `client.py` (HTTP client commands). Nothing else in the project imports this package."""
