"""Bundled example programs. Their functions live at module level (bound with
functools.partial), so cloudpickle ships them by reference to any process that has the
package installed."""
