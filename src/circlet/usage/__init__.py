"""The Usage tag: usage exports, one CSV row per job run, written in the background into the blob store."""
