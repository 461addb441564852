import type { RegExpMatcher } from 'obscenity'

// Built on first use: compiling every pattern of the dataset costs ~100 ms and ~15 MB.
let matcher: Promise<RegExpMatcher> | undefined

export async function isProfane (text: string): Promise<boolean> {
  matcher ??= import('obscenity').then(({ RegExpMatcher, englishDataset, englishRecommendedTransformers }) =>
    new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers }))
  return (await matcher).hasMatch(text)
}
