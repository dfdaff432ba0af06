// Every EC2 action Kiln serves. An action of the model that is not here answers UnsupportedOperation.
import type { ServiceModel } from "../../protocol/model.js";
import { accountActions } from "./account.js";
import type { Action } from "./action.js";
import { regionActions } from "./regions.js";
import { snapshotActions } from "./snapshots.js";
import { volumeActions } from "./volumes.js";
import { imageActions } from "./images.js";
import { instanceActions } from "./instances.js";
import { createImageActions } from "./create-image.js";
import { imageAttributeActions } from "./image-attributes.js";
import { copyActions } from "./copies.js";
import { instanceInfoActions } from "./instance-info.js";
import { tagActions } from "./tags.js";
import { storeRestoreActions } from "./store-restore.js";
import { importActions } from "./imports.js";
import { exportActions } from "./exports.js";
import { keyPairActions } from "./key-pairs.js";
import { vpcActions } from "./vpcs.js";
import { securityGroupActions } from "./security-groups.js";

export function ec2Actions(model: ServiceModel): ReadonlyMap<string, Action> {
  const actions = new Map<string, Action>(
    Object.entries({
      ...regionActions,
      ...accountActions,
      ...tagActions,
      ...snapshotActions,
      ...volumeActions,
      ...imageActions,
      ...instanceActions,
      ...createImageActions,
      ...imageAttributeActions,
      ...copyActions,
      ...instanceInfoActions,
      ...storeRestoreActions,
      ...importActions,
      ...exportActions,
      ...keyPairActions,
      ...vpcActions,
      ...securityGroupActions,
    }),
  );
  // A handler for an action the model lacks is a programming error: stop at start-up.
  for (const name of actions.keys()) {
    if (!model.operations.has(name)) throw new Error(`Kiln serves ${name}, which the EC2 model does not define`);
  }
  return actions;
}
