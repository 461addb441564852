import t from 'tap'
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
let c0 = cpu()
const { build } = await import('./helpers/build.js')
console.error('import cpu ms', (cpu() - c0).toFixed(0))
t.test('x', async (t) => {
  for (let i = 0; i < 5; i++) {
    await t.test('inner', async (t) => {
      const c = cpu()
      await build(t)
      console.error('build cpu', (cpu() - c).toFixed(0))
      t.teardown(() => { c0 = cpu() })
    })
    console.error('teardown cpu', (cpu() - c0).toFixed(0))
  }
})
