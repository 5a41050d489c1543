"""Tests of the analysis package (pytest). A package so that ``import analysis`` resolves
to the repository's folder whatever directory pytest is started from."""
