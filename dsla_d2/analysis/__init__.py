"""Tools that look inside a detector: what the assigner and the loss make of a batch
(:mod:`.assignment_view`), statistics of assignments over a dataset
(:mod:`.assignment_stats`) and their pictures (:mod:`.assignment_plot`, needs matplotlib).

This package sits on the top floor with ``engine`` and ``serving``: it calls the model's
own methods and never re-implements an assignment.
"""
from .assignment_stats import AssignmentStatistics, format_statistics
from .assignment_view import BatchAssignment, ImageAssignment, assign_inputs

__all__ = ["AssignmentStatistics", "BatchAssignment", "ImageAssignment", "assign_inputs", "format_statistics"]
