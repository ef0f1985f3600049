"""The job image: build it from docker/Dockerfile, tagged by a hash of its inputs; push it; remember what was pushed."""
