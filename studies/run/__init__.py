"""Running a study: planning it (`plan`), the driver (`runner`), a trial around
`textvae_core.fit` (`trial`), the driver's side of a trial's life (`events`), every Ray call
(`ray_adapter`), the progress line (`progress`), Optuna samplers and resume (`search`), and
`bench`."""
