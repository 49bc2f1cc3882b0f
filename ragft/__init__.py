"""ragft: RAG, fine-tuned and hybrid answers behind one gateway, and the tools to compare them.

This package holds what every service shares (settings, logging, errors, the web app
skeleton, HTTP clients) and the `ragft` command line.
"""

__version__ = "0.1.0"
