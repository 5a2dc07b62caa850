"""lighthead-edge: Light-Head R-CNN from PyTorch to the camera.

A regular package, not a namespace one, so that tools which locate it by import (import-linter) see exactly this
folder. Nothing is imported here: `lighthead_edge.runtime` must load without torch, and the CLI imports per command.
"""
