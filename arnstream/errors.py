"""One error hierarchy: library code raises these, only the service layer catches them.

Every error names what is at fault (a config key, a schema field, a record position, a file)
so the message alone tells the user where to look.
"""


class ArnstreamError(Exception):
    """Base of every error arnstream raises on purpose."""


class ConfigError(ArnstreamError):
    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class SchemaError(ArnstreamError):
    pass


class RecordError(ArnstreamError):
    """A record that cannot be turned into features; names the field and the row."""

    def __init__(self, field: str | None, reason: str, row: int | None = None):
        self.field = field
        self.reason = reason
        self.row = row
        where = f"row {row}: " if row is not None else ""
        what = f"field '{field}': " if field is not None else ""
        super().__init__(f"{where}{what}{reason}")


class ModelError(ArnstreamError):
    pass


class ArtifactError(ArnstreamError):
    pass


class DataError(ArnstreamError):
    """A dataset file that is missing or not in the expected public format."""


class BrokerError(ArnstreamError):
    pass
