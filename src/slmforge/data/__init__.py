"""Task data: built-in synthetic generators and loading of user datasets."""
