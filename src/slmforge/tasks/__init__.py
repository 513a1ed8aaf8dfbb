"""Task definitions: classification, extraction and generation tasks and their shared utilities."""
