"""Running the series: the ``vaekit`` command (cli) and the headline numbers notebooks record
(recorder).

May import: everything below it (figures, evaluation, inference, the models, the core).
"""

from . import recorder

__all__ = ["recorder"]
