"""slmcnn: powder-bed monitoring for selective laser melting with a CNN and explanations."""

__version__ = "0.1.0"

CLASSES: tuple[str, ...] = ("Powder", "Object", "Error")
"""Class names in label order; the index of a name is its label."""

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Powder": (255, 255, 255),
    "Object": (0, 0, 255),
    "Error": (255, 0, 0),
}
"""RGB overlay colours, as in the reference: white powder, blue object, red error."""
