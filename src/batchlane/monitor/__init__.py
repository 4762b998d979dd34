"""Drift monitoring for text classifiers (docs/monitoring.md): a baseline of sentence embeddings, monitoring runs
that score texts against it, and a plot of the score distributions.

``baseline`` builds and loads baseline folders, ``run`` scores monitored texts and decides on drift, ``statistics``
holds the pure statistics, ``embedding`` the sentence embeddings, ``records`` the input readers and ``report`` the
plot. torch, transformers and matplotlib are imported only where they are used.
"""
