// Terraform's AWS provider (from the machine's local plugin mirror) in a scratch folder, pointed at
// a Kiln: no network, no version checks, the provider block every configuration starts with.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const PLUGINS = process.env.KILN_TF_PLUGINS ?? "/opt/tf-plugins";

/** The provider block for a Kiln at `url`, with an endpoint for each service named. */
export function kilnProvider(url: string, services: readonly string[] = ["ec2"]): string {
  return `
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {
${services.map((service) => `    ${service} = "${url}"`).join("\n")}
  }
}
`;
}

/** A `terraform` runner for configurations in `dir`, using the local plugin mirror. */
export function terraformIn(dir: string) {
  writeFileSync(
    join(dir, "cli.tfrc"),
    `provider_installation {\n  filesystem_mirror {\n    path    = "${PLUGINS}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n`,
  );
  const env = { ...process.env, TF_CLI_CONFIG_FILE: join(dir, "cli.tfrc"), CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1" };
  return (...args: string[]) => execFileAsync("terraform", [`-chdir=${dir}`, ...args], { env, maxBuffer: 16 * 1024 * 1024 });
}
