"""Parity with the torch originals (`originals`): conversion and checks (`checks`), `port`, `bench`, weights (`hub`)."""
