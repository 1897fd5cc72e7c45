"""GSM-Symbolic template instantiation (see the module docstrings for the semantics)."""
from .defaults import check_defaults
from .instantiate import Instance, draw_instances, instances_frame, verify_instance
from .parse import Template, TemplateError, load_template, load_template_set
from .values import format_answer

__all__ = ["Instance", "Template", "TemplateError", "check_defaults", "draw_instances",
           "format_answer", "instances_frame", "load_template", "load_template_set",
           "verify_instance"]
