"""A study's results: summary rows as points (`points`), the check functions (`checks`),
claims judged per seed (`claims`) and the report (`report`)."""
