"""Parts of ``backend.export`` (the documented entry point): the exported module and its
metadata, the file formats (writers, safe recognition and loaders) and the model card."""
