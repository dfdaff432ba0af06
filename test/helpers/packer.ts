// Packer's amazon-ebs builder against a test Kiln: the builder's fields that point it there, and
// an environment that keeps Packer off the network and out of the user's own configuration.
import { join } from "node:path";

/** The start of an amazon-ebs builder that talks to the Kiln at `endpoint`. */
export const amazonEbsOn = (endpoint: string) => ({
  type: "amazon-ebs",
  access_key: "test",
  secret_key: "test",
  region: "us-east-1",
  custom_endpoint_ec2: endpoint,
  skip_metadata_api_check: true,
});

/** No version check; configuration, cache and home in `dir`. */
export const packerEnv = (dir: string): Record<string, string> => ({
  CHECKPOINT_DISABLE: "1",
  PACKER_CONFIG_DIR: dir,
  PACKER_CACHE_DIR: join(dir, "cache"),
  HOME: dir,
});
