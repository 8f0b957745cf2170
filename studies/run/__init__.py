"""Running a study: the driver (`runner`), a trial around `textvae_core.fit` (`trial`),
every Ray call (`ray_adapter`), Optuna samplers and resume (`search`), and `bench`."""
