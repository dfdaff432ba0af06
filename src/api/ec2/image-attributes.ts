// Describe/Modify/ResetImageAttribute: an image's description and launch permissions. A launch
// permission for an account makes the image visible and launchable there; the group `all`
// makes it public.
import type {
  DescribeImageAttributeRequest,
  ImageAttribute,
  LaunchPermission,
  ModifyImageAttributeRequest,
  ResetImageAttributeRequest,
} from "@aws-sdk/client-ec2";
import { ApiError } from "../../protocol/errors.js";
import { changeLaunchPermissions, launchPermissions, setImageDescription } from "../../store/meta/images.js";
import type { ActionTable } from "./action.js";
import { toImage } from "./image-records.js";
import { ownImage, visibleImage } from "./lookups.js";

const ACCOUNT_ID = /^[0-9]{12}$/;
const toPermission = (grantee: string): LaunchPermission => (grantee === "all" ? { Group: "all" } : { UserId: grantee });

function grantee(permission: LaunchPermission): string {
  if (permission.Group !== undefined) {
    if (permission.Group !== "all") throw new ApiError("InvalidParameterValue", `Invalid group: '${permission.Group}'; the only group is 'all'.`);
    return "all";
  }
  if (!permission.UserId || !ACCOUNT_ID.test(permission.UserId))
    throw new ApiError("InvalidParameterValue", `Invalid user id: '${permission.UserId ?? ""}'; a user id is a 12-digit account id.`);
  return permission.UserId;
}

/** The grantees a ModifyImageAttribute request adds and removes, in either of its two forms. */
function permissionChanges(input: ModifyImageAttributeRequest): { add: string[]; remove: string[] } {
  const add = (input.LaunchPermission?.Add ?? []).map(grantee);
  const remove = (input.LaunchPermission?.Remove ?? []).map(grantee);
  const listed = [
    ...(input.UserIds ?? []).map((UserId) => grantee({ UserId })),
    ...(input.UserGroups ?? []).map((Group) => grantee({ Group: Group as "all" })),
  ];
  if (listed.length) {
    if (input.OperationType === "add") add.push(...listed);
    else if (input.OperationType === "remove") remove.push(...listed);
    // Packer sends the same accounts both ways (UserIds and LaunchPermission.Add) without an
    // OperationType; EC2 takes the LaunchPermission form then.
    else if (!add.length && !remove.length) throw new ApiError("MissingParameter", "The request must contain the parameter operationType");
  }
  return { add, remove };
}

export const imageAttributeActions: ActionTable = {
  DescribeImageAttribute: {
    async check(ctx, input: DescribeImageAttributeRequest) {
      const record = await visibleImage(ctx, input.ImageId!);
      if (input.Attribute === "launchPermission" && record.image.account_id !== ctx.accountId) {
        throw new ApiError("AuthFailure", `Not authorized for image:${input.ImageId}`);
      }
    },
    async run(ctx, input: DescribeImageAttributeRequest): Promise<ImageAttribute> {
      const record = await visibleImage(ctx, input.ImageId!);
      const { image } = record;
      const out: ImageAttribute = { ImageId: image.image_id };
      switch (input.Attribute) {
        case "launchPermission":
          out.LaunchPermissions = (await launchPermissions(ctx.meta.db, image.image_id)).map(toPermission);
          break;
        case "description":
          out.Description = image.description ? { Value: image.description } : {};
          break;
        case "kernel":
          out.KernelId = image.kernel_id ? { Value: image.kernel_id } : {};
          break;
        case "ramdisk":
          out.RamdiskId = image.ramdisk_id ? { Value: image.ramdisk_id } : {};
          break;
        case "productCodes":
          out.ProductCodes = [];
          break;
        case "blockDeviceMapping":
          out.BlockDeviceMappings = toImage(record, new Map()).BlockDeviceMappings;
          break;
        case "sriovNetSupport":
          out.SriovNetSupport = image.sriov_net_support ? { Value: image.sriov_net_support } : {};
          break;
        case "bootMode":
          out.BootMode = image.boot_mode ? { Value: image.boot_mode } : {};
          break;
        case "tpmSupport":
          out.TpmSupport = image.tpm_support ? { Value: image.tpm_support } : {};
          break;
        case "uefiData":
          out.UefiData = image.uefi_data ? { Value: image.uefi_data } : {};
          break;
        case "imdsSupport":
          out.ImdsSupport = image.imds_support ? { Value: image.imds_support } : {};
          break;
        case "deregistrationProtection":
          out.DeregistrationProtection = { Value: "disabled" };
          break;
        case "lastLaunchedTime":
          out.LastLaunchedTime = {};
          break;
        default:
          throw new ApiError("UnsupportedOperation", `Kiln does not keep the image attribute ${input.Attribute} yet.`);
      }
      return out;
    },
  },

  ModifyImageAttribute: {
    async check(ctx, input: ModifyImageAttributeRequest) {
      await ownImage(ctx, input.ImageId!);
      permissionChanges(input);
      if (input.Attribute && !["launchPermission", "description"].includes(input.Attribute)) {
        throw new ApiError("UnsupportedOperation", `Kiln modifies launchPermission and description; not ${input.Attribute}.`);
      }
      if (input.OrganizationArns?.length || input.OrganizationalUnitArns?.length) {
        throw new ApiError("UnsupportedOperation", "Kiln has no AWS Organizations: share with account ids or the group 'all'.");
      }
    },
    async run(ctx, input: ModifyImageAttributeRequest) {
      const { image } = await ownImage(ctx, input.ImageId!);
      const { add, remove } = permissionChanges(input);
      if (add.length || remove.length) await changeLaunchPermissions(ctx.meta.db, image.image_id, add, remove);
      const description = input.Description?.Value ?? (input.Attribute === "description" ? input.Value : undefined);
      if (description !== undefined) await setImageDescription(ctx.meta.db, image.image_id, description);
    },
  },

  ResetImageAttribute: {
    async check(ctx, input: ResetImageAttributeRequest) {
      await ownImage(ctx, input.ImageId!);
    },
    async run(ctx, input: ResetImageAttributeRequest) {
      const { image } = await ownImage(ctx, input.ImageId!);
      await changeLaunchPermissions(ctx.meta.db, image.image_id, [], await launchPermissions(ctx.meta.db, image.image_id));
    },
  },
};
