// Role assignments of the Functions app's identity on the resources of this resource group: each adapter
// reaches its service with its Entra ID token and exactly these data roles (no keys exist to fall back on).

@description('Object id of the Functions app system-assigned identity.')
param principalId string

@description('Object ids of scoring endpoints (Azure ML online endpoint identities) that send telemetry.')
param telemetryWriterPrincipalIds array = []

param storageAccountName string
param serviceBusNamespaceName string
param topicName string
param workspaceName string
param appInsightsName string
param collectionRuleName string

// Built-in role definition ids (the same in every tenant).
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageAccountContributor: '17d1049b-9a84-46fb-8f53-869881c3d3ab'
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// Blob Data Owner, Queue Data Contributor and Account Contributor are what the Functions host needs for
// AzureWebJobsStorage (leases, timers, keys, the package); Blob and Table Data Contributor are what the
// report store and the state store use. Owner includes Blob Data Contributor; both are listed so that
// either part still works if the host moves to its own storage account.
var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageBlobDataContributor
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
  roles.storageAccountContributor
]

// The publisher sends to the topic; the triggers receive from its subscriptions.
var busRoles = [
  roles.serviceBusDataSender
  roles.serviceBusDataReceiver
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource collectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: collectionRuleName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  scope: storage
  name: guid(storage.id, principalId, role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource busAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in busRoles: {
  scope: topic
  name: guid(topic.id, principalId, role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

// KQL queries of MLRequests_CL / MLLabels_CL (LogAnalyticsTelemetrySource).
resource logsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, principalId, roles.logAnalyticsReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The app's own logs and traces, sent with its Entra ID token.
resource appInsightsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Logs Ingestion through the rule: the app's identity and every scoring endpoint's.
resource rulePublishers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for writer in concat([principalId], telemetryWriterPrincipalIds): {
  scope: collectionRule
  name: guid(collectionRule.id, writer, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: writer
    principalType: 'ServicePrincipal'
  }
}]
