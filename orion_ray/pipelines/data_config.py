"""``orion.pipelines`` in orion.yaml: where large node outputs go, and whether ``image`` nodes may
run. A model-layer module (pydantic only): ``config.py`` imports it.

```yaml
orion:
  pipelines:
    container_runtime: auto        # auto (podman on the scheduler's host) | true | false
    artifacts:
      backend: local               # local | s3
      root: /data/orion-artifacts  # local: default <the store file's directory>/artifacts
      bucket: my-bucket            # s3: required
      prefix: orion/artifacts      # s3: optional
      region: us-east-1            # s3: optional (else the AWS chain's)
      endpoint_url: null           # s3: another endpoint (MinIO, a moto server in tests)
      inline_max_bytes: 16384      # an output larger than this (as JSON) becomes an artifact
```
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

# one node's outputs inline in the store (the engine's ``MAX_OUTPUT_CHARS``); an inline cap above it
# would let a value through that the engine refuses
INLINE_CEILING = 65_536


class ArtifactsConfig(BaseModel):
    """The artifact store of large node outputs."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["local", "s3"] = "local"
    root: Optional[str] = Field(None, min_length=1, max_length=1024)
    bucket: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field("", max_length=512, pattern=r"^[A-Za-z0-9_.\-/]*$")
    region: Optional[str] = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]+$", max_length=512)
    inline_max_bytes: int = Field(16_384, ge=0, le=INLINE_CEILING)

    @model_validator(mode="after")
    def _backend_fields(self) -> "ArtifactsConfig":
        if self.backend == "s3" and not self.bucket:
            raise ValueError("backend s3 needs bucket")
        if self.backend == "local" and (self.bucket or self.prefix or self.endpoint_url):
            raise ValueError("bucket, prefix and endpoint_url belong to backend s3")
        if self.backend == "s3" and self.root:
            raise ValueError("root belongs to backend local")
        return self


class PipelinesConfig(BaseModel):
    """``orion.pipelines``."""

    model_config = ConfigDict(extra="forbid")
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    # Whether the cluster runs containers (Ray's ``image_uri`` runtime env needs podman on every
    # node): ``auto`` looks for podman on the scheduler's host; say true or false for a cluster
    # whose workers differ from the head.
    container_runtime: Union[bool, Literal["auto"]] = "auto"
