"""One base class for every data error, so callers (and the CLI) can catch them together."""
__all__ = ["DataError"]


class DataError(ValueError):
    """Data that cannot be used (a store, a pool, a source file or folder); the message names
    the file or array and the fix. :class:`~galaxai.data.store.StoreError` and
    :class:`~galaxai.data.sources.SourceError` are its two kinds."""
