"""Kubernetes and KubeRay: the API client, RayJob manifests, reading a stuck RayJob, the port-forward, kind."""
