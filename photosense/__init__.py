"""photosense: cull photo shoots with CLIP-IQA scores for any look/feel attribute."""

__version__ = "0.1.0"
