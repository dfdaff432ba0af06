// Tags given at creation (TagSpecifications) and the limits every tag obeys: shared by every
// Create* action and by CreateTags, and importing no action file.
import type { TagSpecification } from "@aws-sdk/client-ec2";
import { ApiError } from "../../protocol/errors.js";

/** AWS's limits for user tags (and for the resources one CreateTags or DeleteTags names). */
export const TAG_LIMITS = { perResource: 50, keyLength: 128, valueLength: 256, resourcesPerRequest: 1000 };

export function checkTagKey(key: string | undefined, where: string): string {
  if (key === undefined) throw new ApiError("MissingParameter", `The request must contain the parameter ${where}.Key`);
  if (key.length < 1 || key.length > TAG_LIMITS.keyLength) {
    throw new ApiError("InvalidParameterValue", `Tag key must be between 1 and ${TAG_LIMITS.keyLength} characters long; '${key}' is not.`);
  }
  if (key.toLowerCase().startsWith("aws:")) {
    throw new ApiError("InvalidParameterValue", `Tag keys starting with 'aws:' are reserved for internal use; '${key}' cannot be set.`);
  }
  return key;
}

export function checkTagValue(value: string, key: string): string {
  if (value.length > TAG_LIMITS.valueLength) {
    throw new ApiError("InvalidParameterValue", `Tag value for key '${key}' must be at most ${TAG_LIMITS.valueLength} characters long.`);
  }
  return value;
}

/**
 * The tags a Create* request's TagSpecifications give each resource type, checked like
 * CreateTags; a type the action does not create is refused, as EC2 does.
 */
export function tagSpecificationsFor(
  specs: readonly TagSpecification[] | undefined,
  allowed: readonly string[],
): Map<string, { key: string; value: string }[]> {
  const byType = new Map<string, { key: string; value: string }[]>();
  (specs ?? []).forEach((spec, i) => {
    const type = spec.ResourceType;
    if (!type || !allowed.includes(type)) {
      throw new ApiError("InvalidParameterValue", `'${type ?? ""}' is not a valid taggable resource type for this operation.`);
    }
    const tags = byType.get(type) ?? [];
    (spec.Tags ?? []).forEach((tag, j) => {
      const key = checkTagKey(tag.Key, `TagSpecification.${i + 1}.Tag.${j + 1}`);
      tags.push({ key, value: checkTagValue(tag.Value ?? "", key) });
    });
    if (tags.length > TAG_LIMITS.perResource) throw new ApiError("TagLimitExceeded", `A resource can have at most ${TAG_LIMITS.perResource} tags.`);
    byType.set(type, tags);
  });
  return byType;
}
