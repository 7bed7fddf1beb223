// The function app: Flex Consumption (FC1, Linux), Python 3.13, one user-assigned identity for the host and
// the code (host storage, the SCIM table, the change-feed queue, Key Vault references, Application
// Insights) and a second one for the deployment package only.

@description('Region of the plan and the app.')
param location string

@description('Tags for every resource (azd-env-name); the app also gets azd-service-name.')
param tags object

@description('Name of the function app (globally unique host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Resource id of the identity that reads and writes the deployment package (and nothing else).')
param deploymentIdentityId string

@description('Blob endpoint of the storage account, with its trailing slash.')
param blobEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Table endpoint of the storage account, https://<account>.table.core.windows.net.')
param tableEndpoint string

@description('Name of the SCIM table.')
param tableName string

@description('Queue endpoint of the storage account, https://<account>.queue.core.windows.net.')
param queueEndpoint string

@description('Name of the change-feed queue.')
param queueName string

@description('Versionless URI of the Secret Token in Key Vault.')
param bearerTokenSecretUri string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param appInsightsConnectionString string

@description('Optional Entra tenant GUID for Entra-issued JWTs; empty = bearer token only.')
param scimEntraTenantId string

@description('Schema-extensions file, relative to the app root or absolute; empty = built-in schemas only.')
param schemaFile string

@description('reject or ignore: what the app does with an attribute no schema declares.')
param unknownAttributes string

@description('Largest request body the app accepts (SCIM_MAX_BODY_BYTES).')
param scimMaxBodyBytes int

@description('Most instances the app scales out to.')
param maximumInstanceCount int

@description('Memory per instance (MB).')
param instanceMemoryMB int

@description('Always-ready instances for the HTTP triggers (0 = scale to zero).')
param alwaysReadyInstanceCount int

// The host's own body limit, comfortably above the app's. A body over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT fails
// while the host reads it, inside the invocation, and the client gets an empty 500, not a 413
// (Azure/azure-functions-host#10519, open). With the host's limit 4 x the app's, a body that is too large reaches
// the app, whose SCIM 413 says what the limit is; the host's limit still stops anything far larger.
var hostBodySizeLimit = 4 * scimMaxBodyBytes

var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: alwaysReadyInstanceCount
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${deploymentIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Entra's cloud provisioning service calls the Tenant URL from the internet.
    publicNetworkAccess: 'Enabled'
    // Key Vault references (SCIM_BEARER_TOKEN) are resolved with this identity, not a system-assigned one.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: deploymentIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // `http` is the always-ready group of every HTTP trigger.
        alwaysReady: alwaysReadyInstanceCount > 0 ? alwaysReadyHttp : []
      }
      // Flex takes the runtime here; FUNCTIONS_WORKER_RUNTIME and friends are not app settings on Flex. On 3.13
      // the Python execution engine is azure-functions-runtime, pinned in requirements.txt (runtime versioning).
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// A separate config resource: this is the complete set of app settings, so settings added by hand are
// removed by the next `azd provision`.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage through the identity, no connection string. Blob only: HTTP triggers need no queues, and
    // with host blob storage the timer trigger (change_feed_relay) takes its singleton lock as a blob lease
    // (without it, the host would fall back to an in-memory lock, which does not hold across instances).
    AzureWebJobsStorage__blobServiceUri: blobEndpoint
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // DefaultAzureCredential in the SCIM code picks the user-assigned identity by this client id.
    AZURE_CLIENT_ID: identityClientId
    // The app's body limit and the host's, 4 x larger (hostBodySizeLimit above): the app's SCIM 413 fires first.
    SCIM_MAX_BODY_BYTES: string(scimMaxBodyBytes)
    FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(hostBodySizeLimit)
    // The SCIM settings: every name here is documented in docs/configuration.md's settings table.
    SCIM_STORAGE_TABLE_ENDPOINT: tableEndpoint
    SCIM_TABLE_NAME: tableName
    // The change feed: the relay sends each committed change to this queue (Queue Data Message Sender).
    SCIM_STORAGE_QUEUE_ENDPOINT: queueEndpoint
    SCIM_CHANGE_QUEUE: queueName
    SCIM_BEARER_TOKEN: '@Microsoft.KeyVault(SecretUri=${bearerTokenSecretUri})'
    SCIM_PUBLIC_BASE_URL: 'https://${site.properties.defaultHostName}/scim/v2'
    SCIM_ENTRA_TENANT_ID: scimEntraTenantId
    // Operator-declared schema extensions (docs/schema-extensions.md): the file ships in the package.
    SCIM_SCHEMA_FILE: schemaFile
    SCIM_UNKNOWN_ATTRIBUTES: unknownAttributes
  }
}

// No FTP and no SCM basic-auth publishing: azd deploys with an Entra token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output scimBaseUrl string = 'https://${site.properties.defaultHostName}/scim/v2'
