"""Stage reconstruction: depth alignment, levelling, depth-guided 3DGS training (METHOD.md sections 1-2)."""
