"""The client side of raybake: build the image, submit the job, follow it. Never imported by job/."""
