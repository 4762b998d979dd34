"""Drift monitoring for text classifiers (docs/monitoring.md): a baseline of sentence embeddings, monitoring runs
that score texts against it, and a plot of the score distributions.

``baseline`` builds and loads baseline folders, ``run`` scores monitored texts and decides on drift, ``statistics``
holds the pure statistics, ``embedding`` the sentence embeddings, ``records`` the input readers and ``report`` the
plot. Schedules (docs/monitoring-schedules.md): ``cron`` parses the expressions, ``schedules`` and
``schedule_records`` store schedules and runs, ``scheduler`` fires them, ``execution`` runs one, ``job_definition``
maps SageMaker's monitoring job definition and ``alerts`` sends webhook and SNS alerts. torch, transformers and matplotlib are imported only where they are used.
"""
