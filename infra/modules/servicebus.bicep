// Service Bus: one topic, one filtered subscription per consumer (infra/servicebus.subscriptions.json,
// generated from core/routing.py and host.json). Local (SAS) auth is off: Entra ID roles only.

@description('Service Bus namespace name (6-50 characters, globally unique).')
param namespaceName string

param location string
param tags object = {}

@description('Contents of servicebus.subscriptions.json (loaded by main.bicep).')
param bus object

@description('How long an unsettled message may wait in a subscription before it expires.')
param messageTimeToLive string = 'P14D'

@description('Maximum topic size in megabytes (Standard tier: 1024 to 5120).')
param maxTopicSizeMB int = 1024

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

// Duplicate detection drops a repeated MessageId (= deterministic event id) inside the history window.
// It can only be chosen when the topic is created: changing it later means recreating the topic.
resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: bus.topic.name
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: bus.topic.duplicateDetectionHistoryTimeWindow
    maxSizeInMegabytes: maxTopicSizeMB
    enableBatchedOperations: true
    supportOrdering: false
  }
}

// A subscription without subjects is the audit copy of every event: nothing settles it in Azure, so its
// messages simply expire. Consumers' expired messages go to the dead-letter queue to be looked at.
resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [for sub in bus.subscriptions: {
  parent: topic
  name: sub.name
  properties: {
    maxDeliveryCount: bus.topic.maxDeliveryCount
    lockDuration: bus.topic.lockDuration
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnFilterEvaluationExceptions: true
    deadLetteringOnMessageExpiration: !empty(sub.subjects)
    requiresSession: false
    enableBatchedOperations: true
  }
}]

// Naming the rule '$Default' replaces the catch-all TrueFilter a new subscription gets; a rule with another
// name would be added beside it and the subscription would still receive every event.
resource rules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for (sub, i) in bus.subscriptions: if (!empty(sub.sqlFilter)) {
  parent: subscriptions[i]
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: sub.sqlFilter
      compatibilityLevel: 20
    }
  }
}]

output namespaceName string = namespace.name
output topicName string = topic.name
// The host name only (what ServiceBusConnection__fullyQualifiedNamespace expects), from the endpoint URL
// so it is right in every cloud: https://<name>.servicebus.windows.net:443/ -> <name>.servicebus.windows.net
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '://')[1], ':')[0]
