"""The environment as declared: the validated spec, password references, inventory reading. Knows nothing of pyinfra."""
