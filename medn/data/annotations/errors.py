"""The error raised for an annotation file that cannot be read as its dataset's sheet."""

from __future__ import annotations


class AnnotationError(ValueError):
    """A bad annotation file: the message names the file, sheet, row and/or column at fault and
    what was expected."""
