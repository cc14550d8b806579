"""The read-only results page of one job, reached by the signed link of its e-mails."""
