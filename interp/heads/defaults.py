"""Default needle-grid settings, shared by :mod:`interp.heads.retrieval` and `interp heads`.

Plain constants (no imports), so the command line can show them without loading torch.
"""

MIN_LENGTH = 256  # the default length grid doubles from here ...
MAX_LENGTH = 2048  # ... up to max_length = min(MAX_LENGTH, the longest prompt the context decodes)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
N_NEEDLES = 3
MAX_NEW_TOKENS = 50
