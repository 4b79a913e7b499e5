// AzureML Data Scientist for the Functions app on an existing Azure ML workspace, which may live in another
// resource group: main.bicep deploys this module at that resource group's scope.
// The role submits pipeline jobs, registers models and manages online endpoint deployments and traffic,
// but cannot create compute or change the workspace itself.

@description('Object id of the Functions app system-assigned identity.')
param principalId string

@description('Name of the Azure ML workspace in this resource group.')
param workspaceName string

var azuremlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource dataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, principalId, azuremlDataScientist)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azuremlDataScientist)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher: each check's results are sent as Azure Monitor custom metrics on the workspace's
// online endpoints (monitors/results.py, MLOPS_METRICS_REGION); a workspace-scope grant covers its endpoints.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, principalId, monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
