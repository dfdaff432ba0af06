// Every error code Kiln answers with, in one registry: code → HTTP status. Modules throw
// ApiError with a code from here, so no module invents its own status.
export const ERROR_STATUS = {
  // Request shape and parameters
  MissingAction: 400,
  InvalidAction: 400,
  NoSuchVersion: 400,
  MissingParameter: 400,
  InvalidParameter: 400,
  InvalidParameterValue: 400,
  InvalidParameterCombination: 400,
  UnknownParameter: 400,
  UnsupportedOperation: 400,
  InvalidRequest: 400,
  InvalidNextToken: 400,
  InvalidID: 400,
  TagLimitExceeded: 400,
  FilterLimitExceeded: 400,
  ResourceCountExceeded: 400,
  MalformedQueryString: 400,
  RequestHeaderSectionTooLarge: 400,
  RequestEntityTooLarge: 413,
  "InvalidSnapshotID.Malformed": 400,
  "InvalidSnapshot.NotFound": 400,
  IncorrectState: 400,
  "InvalidVolume.NotFound": 400,
  "InvalidVolumeID.Malformed": 400,
  VolumeInUse: 400,
  "InvalidAMIID.Malformed": 400,
  "InvalidAMIID.NotFound": 400,
  "InvalidAMIID.Unavailable": 400,
  "InvalidAMIName.Malformed": 400,
  "InvalidAMIName.Duplicate": 400,
  "InvalidSnapshot.InUse": 400,
  InvalidBlockDeviceMapping: 400,
  "InvalidInstanceID.Malformed": 400,
  "InvalidInstanceID.NotFound": 400,
  IncorrectInstanceState: 400,
  InvalidInstanceType: 400,
  InvalidConversionTaskId: 400,
  "InvalidConversionTaskId.Malformed": 400,
  // Key pairs
  "InvalidKeyPair.Duplicate": 400,
  "InvalidKeyPair.NotFound": 400,
  "InvalidKey.Format": 400,
  // Networks and security groups
  "InvalidVpcID.Malformed": 400,
  "InvalidVpcID.NotFound": 400,
  "InvalidVpc.Range": 400,
  "InvalidSubnetID.Malformed": 400,
  "InvalidSubnetID.NotFound": 400,
  "InvalidSubnet.Range": 400,
  "InvalidSubnet.Conflict": 400,
  "InvalidGroupId.Malformed": 400,
  "InvalidGroup.NotFound": 400,
  "InvalidGroup.Duplicate": 400,
  "InvalidGroup.Reserved": 400,
  "InvalidPermission.Duplicate": 400,
  RulesPerSecurityGroupLimitExceeded: 400,
  "InvalidPermission.NotFound": 400,
  "InvalidPermission.Malformed": 400,
  "InvalidSecurityGroupRuleId.NotFound": 400,
  "InvalidInternetGatewayID.NotFound": 400,
  "InvalidRouteTableID.NotFound": 400,
  "InvalidNetworkInterfaceID.NotFound": 400,
  "InvalidNetworkInterfaceID.Malformed": 400,
  VPCIdNotSpecified: 400,
  DefaultVpcAlreadyExists: 400,
  "Resource.AlreadyAssociated": 400,
  "Gateway.NotAttached": 400,
  "InvalidIPAddress.InUse": 400,
  InsufficientFreeAddressesInSubnet: 400,
  InstanceLimitExceeded: 400,
  AttachmentLimitExceeded: 400,
  InvalidInstanceAttributeValue: 400,
  CannotDelete: 400,
  DependencyViolation: 400,
  OperationNotPermitted: 400,
  // EBS direct APIs (REST-JSON, error type in x-amzn-ErrorType), and SSM's
  ValidationException: 400,
  ResourceNotFoundException: 404,
  ConflictException: 409,
  AccessDeniedException: 403,
  // SSM Parameter Store (JSON 1.1, error type in __type)
  ParameterNotFound: 400,
  ParameterAlreadyExists: 400,
  ParameterVersionNotFound: 400,
  ParameterLimitExceeded: 400,
  ParameterPatternMismatchException: 400,
  InvalidAllowedPatternException: 400,
  UnsupportedParameterType: 400,
  HierarchyLevelLimitExceededException: 400,
  InvalidFilterKey: 400,
  InvalidFilterOption: 400,
  InvalidFilterValue: 400,
  InvalidResourceId: 400,
  InvalidResourceType: 400,
  TooManyTagsError: 400,
  UnsupportedOperationException: 400,
  SerializationException: 400,
  InternalServerError: 500,
  // S3 (REST-XML)
  NoSuchBucket: 404,
  BucketAlreadyExists: 409,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  InvalidBucketName: 400,
  InvalidLocationConstraint: 400,
  IllegalLocationConstraintException: 400,
  MalformedXML: 400,
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  RequestTimeTooSkewed: 403,
  AuthorizationHeaderMalformed: 400,
  NotImplemented: 501,
  NoSuchKey: 404,
  InvalidURI: 400,
  NoSuchUpload: 404,
  NoSuchTagSet: 404,
  InvalidArgument: 400,
  InvalidDigest: 400,
  BadDigest: 400,
  XAmzContentSHA256Mismatch: 400,
  IncompleteBody: 400,
  InvalidChunkSizeError: 403,
  MissingContentLength: 411,
  EntityTooSmall: 400,
  EntityTooLarge: 400,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  PreconditionFailed: 412,
  NotModified: 304,
  KeyTooLongError: 400,
  InvalidTag: 400,
  MetadataTooLarge: 400,
  InvalidObjectState: 403,
  // Authentication
  IncompleteSignature: 400,
  RequestExpired: 400,
  AuthFailure: 401,
  MissingAuthenticationToken: 403,
  SignatureDoesNotMatch: 403,
  UnauthorizedOperation: 403,
  DryRunOperation: 412,
  // Routing and the server itself
  NotFound: 404,
  MethodNotAllowed: 405,
  InternalError: 500,
  // EC2 counts it among its server errors: the host has no room, whatever the request said.
  InsufficientInstanceCapacity: 500,
  ServiceUnavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class ApiError extends Error {
  readonly status: number;
  /** The machine-readable reason some protocols carry beside the message (EBS's `Reason`). */
  readonly reason?: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    reason?: string,
  ) {
    super(message);
    this.status = ERROR_STATUS[code];
    this.reason = reason;
  }
}

/** InvalidParameterValue for one named parameter, so an action can answer with its own code instead. */
export class InvalidParameter extends ApiError {
  constructor(
    readonly parameter: string,
    message: string,
    readonly value?: string,
  ) {
    super("InvalidParameterValue", message);
  }
}

export const dryRunSucceeded = () => new ApiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
