"""Tools that read a trained model: what the guide says about the input genes."""

from scgtl.tl._plasticity import PLASTICITY_SUMMARIES, gene_plasticity

__all__ = ["PLASTICITY_SUMMARIES", "gene_plasticity"]
