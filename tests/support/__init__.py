"""Shared test-support code: client-history recording and the linearizability checker."""
