import type { Role } from '../../db/types.js'

// What each role may do, as the scopes its access tokens carry. Roles are granted by an admin only.
const scopesByRole: Record<Role, readonly string[]> = {
  user: ['account', 'containers'],
  developer: ['account', 'containers', 'fleet:read', 'fleet:write', 'catalog:write'],
  admin: ['account', 'containers', 'fleet:read', 'fleet:write', 'catalog:write', 'users:read', 'users:write', 'admin']
}

export function scopesFor (role: Role): string[] {
  return [...scopesByRole[role]]
}
