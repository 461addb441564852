// The catalog a fresh installation starts with: AWS regions we stream from and the apps we offer.
export const regions = [
  { code: 'us-east-1', name: 'US East (N. Virginia)', latitude: 38.9, longitude: -77.4, enabled: true },
  { code: 'us-east-2', name: 'US East (Ohio)', latitude: 40.0, longitude: -83.0, enabled: true },
  { code: 'us-west-1', name: 'US West (N. California)', latitude: 37.4, longitude: -121.9, enabled: true },
  { code: 'us-west-2', name: 'US West (Oregon)', latitude: 45.8, longitude: -119.7, enabled: true },
  { code: 'ca-central-1', name: 'Canada (Central)', latitude: 45.5, longitude: -73.6, enabled: true },
  { code: 'eu-west-1', name: 'Europe (Ireland)', latitude: 53.3, longitude: -6.3, enabled: true },
  { code: 'eu-west-2', name: 'Europe (London)', latitude: 51.5, longitude: -0.1, enabled: true },
  { code: 'eu-central-1', name: 'Europe (Frankfurt)', latitude: 50.1, longitude: 8.7, enabled: true },
  { code: 'ap-northeast-1', name: 'Asia Pacific (Tokyo)', latitude: 35.7, longitude: 139.7, enabled: true },
  { code: 'ap-southeast-1', name: 'Asia Pacific (Singapore)', latitude: 1.3, longitude: 103.8, enabled: true },
  { code: 'ap-southeast-2', name: 'Asia Pacific (Sydney)', latitude: -33.9, longitude: 151.2, enabled: true },
  { code: 'sa-east-1', name: 'South America (São Paulo)', latitude: -23.5, longitude: -46.6, enabled: false }
] as const

const everywhere = ['us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'ca-central-1', 'eu-west-1', 'eu-west-2', 'eu-central-1', 'ap-northeast-1', 'ap-southeast-1', 'ap-southeast-2', 'sa-east-1']
const core = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-northeast-1']

export const apps = [
  { id: 'chrome', name: 'Google Chrome', category: 'browser', regions: everywhere, warm: 4, description: 'The web browser, streamed from a GPU machine: heavy sites and web apps without the load on your laptop.' },
  { id: 'firefox', name: 'Mozilla Firefox', category: 'browser', regions: everywhere, warm: 2, description: 'The independent browser, with your extensions and profile kept between sessions.' },
  { id: 'brave', name: 'Brave', category: 'browser', regions: core, warm: 1, description: 'A privacy-first browser with built-in ad and tracker blocking.' },
  { id: 'figma', name: 'Figma', category: 'design', regions: core, warm: 2, description: 'Collaborative interface design with GPU-accelerated canvas rendering.' },
  { id: 'blender', name: 'Blender', category: 'design', regions: ['us-east-1', 'us-west-2', 'eu-central-1'], warm: 0, description: '3D modelling, animation and rendering on a cloud GPU.' },
  { id: 'notion', name: 'Notion', category: 'productivity', regions: core, warm: 1, description: 'Notes, docs and wikis in one workspace.' },
  { id: 'slack', name: 'Slack', category: 'communication', regions: core, warm: 1, description: 'Team messaging, channels and huddles.' },
  { id: 'discord', name: 'Discord', category: 'communication', regions: ['us-east-1', 'us-west-2', 'eu-west-1'], warm: 0, description: 'Voice, video and text chat for communities.' },
  { id: 'vscode', name: 'Visual Studio Code', category: 'development', regions: core, warm: 1, description: 'The code editor, with a fast machine behind your builds.' },
  { id: 'spotify', name: 'Spotify', category: 'media', regions: ['us-east-1', 'eu-west-1'], warm: 0, description: 'Music and podcasts.' }
] as const
