"""Build configuration beyond pyproject.toml: the optional C core of parse_json().

``rxstream._jsonfast`` is compiled when a C compiler is present; without one the install still
succeeds (``optional=True``) and parse_json() uses its pure-Python fast path (ijson + a lexer).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rxstream._jsonfast",
            sources=["rxstream/_jsonfast.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
