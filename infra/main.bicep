// SCIM 2.0 endpoint for Microsoft Entra ID provisioning, on Azure Functions (Flex Consumption).
//
// Deployed by `azd up` (see docs/deploy-azure.md). Subscription scope, as azd expects by default: this
// file creates the resource group, then two modules fill it:
//   app/resources.bicep  identity, storage (host + deployment package + the SCIM table + the change-feed
//                        queue), Key Vault with the Secret Token, Log Analytics + Application Insights,
//                        and every role assignment;
//   app/api.bicep        the Flex Consumption plan, the function app and its app settings.
// Plain resources only (no Azure Verified Modules): the template must build without a registry restore.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment. Names every resource (through a hash) and is written to the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group to create. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@secure()
@minLength(32)
@description('The Secret Token Entra sends as "Authorization: Bearer ...". Stored only in Key Vault; the app reads it through a Key Vault reference. Generate it with: python -c "import secrets; print(secrets.token_urlsafe(32))"')
param scimBearerToken string

@description('Optional: your Entra tenant GUID, to also accept Entra-issued JWTs of that tenant (Secret Token left blank in Entra). Empty: bearer token only.')
param scimEntraTenantId string = ''

@description('Optional: the schema-extensions file (JSON or YAML) the app loads at start-up, relative to the app root (where function_app.py is) and deployed with the code, e.g. schema-extensions.yaml (docs/schema-extensions.md). Empty: only the built-in schemas.')
param schemaFile string = ''

@allowed([
  'reject'
  'ignore'
])
@description('What the app does with an attribute no built-in or declared schema has: reject (400 naming it) or ignore (drop it, and list it in the log line and the audit record).')
param unknownAttributes string = 'reject'

@minValue(1024)
@maxValue(26214400)
@description('Largest request body the app accepts (SCIM_MAX_BODY_BYTES, bytes; a SCIM 413 above it). The Functions host limit, FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, is set to 4 x this value (app/api.bicep), so at most 25 MiB: 4 x 25 MiB is the 100 MB request length of Azure Functions.')
param scimMaxBodyBytes int = 1048576

@minValue(1)
@maxValue(1000)
@description('Most instances the app scales out to. SCIM traffic from Entra is modest; this also bounds the load on the table.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Memory per instance (MB); CPU scales with it.')
param instanceMemoryMB int = 2048

@minValue(0)
@maxValue(20)
@description('Always-ready instances for the HTTP triggers: 0 = scale to zero (cold starts, no idle cost); 1 = no cold start, billed while idle.')
param alwaysReadyInstanceCount int = 0

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Replication of the storage account that holds the SCIM table. ZRS/GZRS where the region offers them.')
param storageSkuName string = 'Standard_LRS'

@minValue(7)
@maxValue(90)
@description('Soft-delete retention of the Key Vault, in days. With purge protection a deleted vault (and its name) stays reserved this long.')
param keyVaultSoftDeleteRetentionInDays int = 90

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-api-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'app/resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    functionAppName: functionAppName
    scimBearerToken: scimBearerToken
    storageSkuName: storageSkuName
    keyVaultSoftDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
  }
}

// Every input comes from the resources module's outputs, so ARM deploys the app only after the identity's
// role assignments exist: the Key Vault reference and identity-based host storage need them at start-up.
module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: 'plan-${resourceToken}'
    identityId: resources.outputs.identityId
    identityClientId: resources.outputs.identityClientId
    deploymentIdentityId: resources.outputs.deploymentIdentityId
    blobEndpoint: resources.outputs.blobEndpoint
    deploymentContainerName: resources.outputs.deploymentContainerName
    tableEndpoint: resources.outputs.tableEndpoint
    tableName: resources.outputs.tableName
    queueEndpoint: resources.outputs.queueEndpoint
    queueName: resources.outputs.queueName
    bearerTokenSecretUri: resources.outputs.bearerTokenSecretUri
    appInsightsConnectionString: resources.outputs.appInsightsConnectionString
    scimEntraTenantId: scimEntraTenantId
    schemaFile: schemaFile
    unknownAttributes: unknownAttributes
    scimMaxBodyBytes: scimMaxBodyBytes
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
  }
}

// azd writes these to .azure/<env>/.env. None of them is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_KEY_VAULT_NAME string = resources.outputs.keyVaultName
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = resources.outputs.identityClientId
output SCIM_BEARER_TOKEN_SECRET_NAME string = resources.outputs.bearerTokenSecretName
output SCIM_STORAGE_TABLE_ENDPOINT string = resources.outputs.tableEndpoint
output SCIM_TABLE_NAME string = resources.outputs.tableName
output SCIM_STORAGE_QUEUE_ENDPOINT string = resources.outputs.queueEndpoint
output SCIM_CHANGE_QUEUE string = resources.outputs.queueName
// The Tenant URL to paste into Entra's provisioning page (docs/connect-entra.md).
output SCIM_TENANT_URL string = api.outputs.scimBaseUrl
