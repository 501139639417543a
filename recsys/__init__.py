"""recsys: related-headline recommendations for news sites."""

__version__ = "0.1.0"
