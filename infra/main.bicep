// The model monitoring and retraining service on Azure: a Functions app (Flex Consumption, Linux, Python 3.11)
// with a system-assigned identity, and everything it talks to, with identity-based connections only.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p azuremlWorkspaceId=<workspace resource id>
//
// The topic's subscriptions and the telemetry tables come from files generated from the code
// (python -m infra.generate); see docs/azure.md.
targetScope = 'resourceGroup'

@description('Prefix of every resource name (letters, digits and hyphens).')
@minLength(3)
@maxLength(11)
param baseName string = 'mlops'

param location string = resourceGroup().location

@description('Resource id of the Azure ML workspace the endpoints, models and pipelines live in: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>')
@minLength(1)
param azuremlWorkspaceId string

@description('MLOPS_ENVIRONMENT: a label carried in reports and alerts.')
param environmentName string = 'prod'

@description('CHECK_SCHEDULE (NCRONTAB, 6 fields, seconds first): how often due checks are requested.')
param checkSchedule string = '0 */5 * * * *'

@description('TRACK_SCHEDULE (NCRONTAB): how often running retrain pipelines and canaries are looked at.')
param trackSchedule string = '30 * * * * *'

@description('MLOPS_MONITORS_DIR: folder of monitor spec YAML files inside the deployed package.')
param monitorsDir string = 'monitors/examples'

@description('MLOPS_RETRAIN_CONFIG: retrain policy/gate/canary YAML inside the deployed package. Empty: built-in defaults.')
param retrainConfig string = ''

@description('MLOPS_WEBHOOK_URL: alert webhook (may hold a token, hence secure). Empty: alerts go to the log only.')
@secure()
param webhookUrl string = ''

@description('MLOPS_NOTIFY_URLS: apprise notification URLs (Teams, Slack, email, PagerDuty ...), space separated; they hold tokens, hence secure (or a Key Vault reference). Empty: none.')
@secure()
param notifyUrls string = ''

@description('MLOPS_WEBHOOK_FORMAT')
@allowed(['json', 'teams', 'slack'])
param webhookFormat string = 'json'

@description('MLOPS_MAX_BODY_BYTES: largest accepted HTTP request body.')
param maxBodyBytes int = 65536

@description('MLOPS_MAX_WINDOW_SPAN: longest window POST /api/checks and /api/retrain accept (e.g. 92d).')
param maxWindowSpan string = '92d'

@description('MLOPS_CHECK_MAX_ATTEMPTS: failed attempts (not outages) before a window is recorded as failed.')
param checkMaxAttempts int = 3

@description('MLOPS_CHECK_LEASE: how long a running check holds its window; at least the function timeout.')
param checkLease string = '10m'

@description('MLOPS_CHECK_REQUEST_TTL: after this, an unanswered check request is sent again under a new id.')
param checkRequestTtl string = '15m'

@description('MLOPS_MAX_WINDOWS_PER_TICK: catch-up bound, windows one monitor asks for per timer tick.')
param maxWindowsPerTick int = 24

@description('MLOPS_SUMMARY_ABOVE_ROWS: windows with more requests are checked from summaries (0: always all rows).')
param summaryAboveRows int = 5000000

@description('Object ids of the scoring endpoints\' identities that send telemetry through the data collection rule.')
param telemetryWriterPrincipalIds array = []

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

param maximumInstanceCount int = 40

@minValue(30)
param logRetentionInDays int = 30

param tags object = {}

@description('Resource id of an action group the alert rules notify (dead-letters, failed checks). Empty: alertEmail.')
param alertActionGroupId string = ''

@description('E-mail address alerts go to, through an action group made for it (when alertActionGroupId is empty).')
param alertEmail string = ''

@description('Send each check\'s results as Azure Monitor custom metrics on the endpoints (MLOPS_METRICS_REGION).')
param publishCheckMetrics bool = true

@description('MLOPS_OTEL_EXPORT: the app\'s own telemetry (auto: Application Insights, where the alert rules read it).')
@allowed(['auto', 'azure', 'log', 'off'])
param otelExport string = 'auto'

var bus = loadJsonContent('servicebus.subscriptions.json')
var telemetry = loadJsonContent('loganalytics.tables.json')

var suffix = uniqueString(resourceGroup().id)
var names = {
  functionApp: '${baseName}-func-${suffix}'
  plan: '${baseName}-plan-${suffix}'
  storage: take(toLower(replace('${baseName}${suffix}', '-', '')), 24)
  serviceBus: '${baseName}-sb-${suffix}'
  workspace: '${baseName}-logs-${suffix}'
  appInsights: '${baseName}-appi-${suffix}'
  collectionEndpoint: '${baseName}-dce-${suffix}'
  collectionRule: '${baseName}-dcr-${suffix}'
}

// /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>
var aml = split(azuremlWorkspaceId, '/')

// The workspace itself (maybe in another resource group): its region is where its endpoints' metrics go.
resource azuremlWorkspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: aml[8]
  scope: resourceGroup(aml[2], aml[4])
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    accountName: names.storage
    location: location
    tags: tags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    namespaceName: names.serviceBus
    location: location
    tags: tags
    bus: bus
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    collectionEndpointName: names.collectionEndpoint
    collectionRuleName: names.collectionRule
    location: location
    tags: tags
    telemetry: telemetry
    retentionInDays: logRetentionInDays
  }
}

// Every setting core/settings.py reads, as strings (WEBSITE_INSTANCE_ID is set by the platform). An Azure adapter is
// chosen in bootstrap.py when its setting is present, so each of these switches one port to Azure.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.accountName
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  MLOPS_TABLES_ENDPOINT: storage.outputs.tableEndpoint
  MLOPS_BLOB_ENDPOINT: storage.outputs.blobEndpoint
  LOG_ANALYTICS_WORKSPACE_ID: monitoring.outputs.workspaceCustomerId
  AZUREML_SUBSCRIPTION_ID: aml[2]
  AZUREML_RESOURCE_GROUP: aml[4]
  AZUREML_WORKSPACE: aml[8]
  CHECK_SCHEDULE: checkSchedule
  TRACK_SCHEDULE: trackSchedule
  MLOPS_MONITORS_DIR: monitorsDir
  MLOPS_RETRAIN_CONFIG: retrainConfig
  // The package is read-only: the profile cache and the other embedded files go to the instance's /tmp.
  MLOPS_DATA_DIR: '/tmp/mlops'
  MLOPS_CLOCK: 'real'
  MLOPS_ENVIRONMENT: environmentName
  MLOPS_WEBHOOK_URL: webhookUrl
  MLOPS_NOTIFY_URLS: notifyUrls
  MLOPS_WEBHOOK_FORMAT: webhookFormat
  MLOPS_MAX_BODY_BYTES: string(maxBodyBytes)
  MLOPS_MAX_WINDOW_SPAN: maxWindowSpan
  MLOPS_CHECK_MAX_ATTEMPTS: string(checkMaxAttempts)
  MLOPS_CHECK_LEASE: checkLease
  MLOPS_CHECK_REQUEST_TTL: checkRequestTtl
  MLOPS_MAX_WINDOWS_PER_TICK: string(maxWindowsPerTick)
  MLOPS_SUMMARY_ABOVE_ROWS: string(summaryAboveRows)
  MLOPS_DUPLICATE_WINDOW_S: string(bus.topic.duplicateDetectionSeconds)
  MLOPS_OTEL_EXPORT: otelExport
  MLOPS_METRICS_REGION: publishCheckMetrics ? azuremlWorkspace.location : ''
  // evidently snapshots go to a local folder: for devhost and the demo (Azure Monitor metrics serve the same here)
  MLOPS_EVIDENTLY_WORKSPACE: ''
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    appSettings: appSettings
    appInsightsName: monitoring.outputs.appInsightsName
    packageContainerUrl: storage.outputs.packageContainerUrl
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    telemetryWriterPrincipalIds: telemetryWriterPrincipalIds
    storageAccountName: storage.outputs.accountName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    topicName: serviceBus.outputs.topicName
    workspaceName: monitoring.outputs.workspaceName
    appInsightsName: monitoring.outputs.appInsightsName
    collectionRuleName: monitoring.outputs.collectionRuleName
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    appInsightsName: monitoring.outputs.appInsightsName
    location: location
    tags: tags
    actionGroupId: alertActionGroupId
    alertEmail: alertEmail
  }
}

module azuremlRole 'modules/azureml-role.bicep' = {
  name: 'azureml-role-${suffix}'
  scope: resourceGroup(aml[2], aml[4])
  params: {
    principalId: functionApp.outputs.principalId
    workspaceName: aml[8]
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = 'https://${functionApp.outputs.defaultHostName}'
output functionAppPrincipalId string = functionApp.outputs.principalId
output storageAccountName string = storage.outputs.accountName
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output logAnalyticsWorkspaceId string = monitoring.outputs.workspaceCustomerId
@description('Set as MLOPS_TELEMETRY_DCE in scoring deployments.')
output telemetryIngestionEndpoint string = monitoring.outputs.ingestionEndpoint
@description('Set as MLOPS_TELEMETRY_DCR_ID in scoring deployments.')
output telemetryRuleId string = monitoring.outputs.ruleImmutableId
