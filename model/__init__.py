"""vidpose pose model: ViT backbone, GLS-Mamba temporal encoder, heatmap diffusion head.

Imports nothing from `service` or `training`.
"""
